"""Tables and the SQL that reads and writes them; routes and workers call these functions."""
