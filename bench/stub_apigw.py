"""
A stub of the API Gateway's authenticate REST API for bench/run's
delegated-realm rows: HTTPS on loopback with a certificate from bench/run's
own throw-away CA.

    python stub_apigw.py PORT CERT_PEM KEY_PEM

C{POST /rest/apigateway/authenticate} with C{{"user-id", "password"}}
answers 200 C{{"status": "Authenticated", "expires": "3600"}} when the
password is C{"pw-" + user}, else 401.  C{GET /count} answers how many
authenticate requests came in (bench/run reports it: a warm cache asks none).
"""

import json
import sys

from twisted.internet import endpoints, reactor
from twisted.web import resource, server


class Authenticate(resource.Resource):
    isLeaf = True

    def __init__(self):
        resource.Resource.__init__(self)
        self.count = 0

    def render_POST(self, request):
        self.count += 1
        request.setHeader(b"Content-Type", b"application/json")
        try:
            document = json.loads(request.content.read())
            user, password = document["user-id"], document["password"]
        except (ValueError, KeyError, TypeError):
            request.setResponseCode(400)
            return b'{"status": "Bad request"}'
        if password != "pw-" + user:
            request.setResponseCode(401)
            return b'{"status": "Not Authenticated"}'
        return json.dumps({"status": "Authenticated", "user": user, "expires": "3600",
                           "groups": ["Everybody"], "accessProfiles": []}).encode("utf-8")


class Count(resource.Resource):
    isLeaf = True

    def __init__(self, auth):
        resource.Resource.__init__(self)
        self.auth = auth

    def render_GET(self, request):
        return str(self.auth.count).encode("ascii")


class Quiet(server.Site):
    def log(self, request):
        pass


def main(port, cert, key):
    auth = Authenticate()
    root = resource.Resource()
    rest = resource.Resource()
    gw = resource.Resource()
    root.putChild(b"rest", rest)
    rest.putChild(b"apigateway", gw)
    gw.putChild(b"authenticate", auth)
    root.putChild(b"count", Count(auth))
    endpoint = endpoints.serverFromString(
        reactor, f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    endpoint.listen(Quiet(root))
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
