"""The forecaster's pure core: no PostgreSQL or Redis needed."""
