from labkit.exercises import network as _network

my_forward = f"tcp:10.0.2.100:{_network.forward_port()}-tcp:127.0.0.1:{second.port}"  # guest side, then the host's
