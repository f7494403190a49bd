"""An app that prints (for --capture-output)."""


def app(environ, start_response):
    print("printed by the app", flush=True)
    start_response("200 OK", [])
    return [b"ok"]
