"""SQL models, engine and sessions, migrations, the episode file store and LeRobot v3.0 export/import.

Imports nothing of ours: arrows point down (webapp -> backend -> vla_core -> storage).
"""
