"""OSC for controllers: the control server, the feedback stream and OSCQuery discovery."""
