"""A small Flask app for end-to-end tests with a real client (requests)."""

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask"


@app.route("/json", methods=["POST"])
def echo_json():
    return jsonify(received=request.get_json(), args=request.args)


@app.route("/form", methods=["POST"])
def form():
    upload = request.files.get("upload")
    return jsonify(name=request.form.get("name"),
                   upload=upload.read().decode() if upload else None)


@app.route("/stream")
def stream():
    def generate():
        for i in range(5):
            yield f"line {i}\n"
    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.route("/headers")
def headers():
    return jsonify(host=request.host, remote=request.remote_addr, url=request.url,
                   ua=request.headers.get("User-Agent"))


@app.errorhandler(404)
def not_found(error):
    return jsonify(error="not found"), 404
