"""One blueprint per screen of the station."""
