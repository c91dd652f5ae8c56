"""Persistence: the Store actor, its backends, and the seed's SessionStore."""
