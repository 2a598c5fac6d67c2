"""HTTP routes: thin, they call query and service functions."""
