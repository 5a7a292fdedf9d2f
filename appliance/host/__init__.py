"""Host integration: the daemon, the kernel hand-over and the link watcher."""
