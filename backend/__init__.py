"""Robot interface, MuJoCo simulation, control loop and the services the web app calls."""
