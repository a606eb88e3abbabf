"""Tools that touch the world (cluster, metrics, postmortems, escalation) and the guard before them."""
