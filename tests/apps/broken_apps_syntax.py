def app(environ, start_response)
    return []
