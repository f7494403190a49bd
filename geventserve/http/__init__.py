"""The data path: bytes to requests (parser), requests to WSGI calls (wsgi), responses to bytes.

Nothing here forks, handles signals or knows which worker class runs it.
"""
