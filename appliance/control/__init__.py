"""The control plane: the Unix-socket server, its client, routerctl, and config reload."""
