from helpers import request


def test_hello(server):
    response = request(server.port, "GET", "/")
    assert response.status == 200
    assert response.body == b"hello"
