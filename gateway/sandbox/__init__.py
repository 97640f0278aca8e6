"""`gateway run`: one agent process confined on this machine with Linux namespaces,
the policy's mount plan, the command shim and a network whose only way out is the
gateway's proxy."""
