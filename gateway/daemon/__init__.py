"""`gateway up`: the long-running gateway and the sockets it serves."""
