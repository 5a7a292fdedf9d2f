"""The sans-IO router: frames and `now` in, actions out; no socket, no clock, no kernel."""
