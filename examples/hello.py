"""The Flask hello world that `make run` serves.

Run it: geventserve -k gevent -w 2 -b 127.0.0.1:8000 --chdir examples hello:app
"""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello, World!"
