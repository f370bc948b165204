"""FastAPI app, routers, WebSockets and the Gradio UI (arrives with the teleop issue)."""
