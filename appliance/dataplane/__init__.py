"""The data path: AF_PACKET rings, the C fast path, its Python twin, and the table sync
that feeds both from the router core."""
