"""Interleaved timing of GET /api/v1/people/{id} for an opted-out person, an unknown id
and a person who died more than 8 years ago (all must answer 404 alike), on one
keep-alive connection. Prints medians and quartiles in microseconds."""
import http.client, json, sys, time, uuid, statistics, random

host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ids = {"opted_out": sys.argv[4], "long_dead": sys.argv[5], "unknown": str(uuid.uuid4())}
rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 1000
c = http.client.HTTPConnection(host, port)
c.request("POST", "/api/v1/sessions", json.dumps({"username": "gp", "password": password}), {"content-type": "application/json"})
token = json.loads(c.getresponse().read())["token"]
h = {"Authorization": "Bearer " + token}
samples = {k: [] for k in ids}
bodies = {}
for i in range(rounds):
    order = list(ids.items()); random.shuffle(order)
    for name, pid in order:
        t = time.perf_counter()
        c.request("GET", "/api/v1/people/" + pid, headers=h)
        r = c.getresponse(); body = r.read()
        samples[name].append((time.perf_counter() - t) * 1e6)
        bodies.setdefault(name, set()).add((r.status, body))
for name, s in samples.items():
    q = statistics.quantiles(s, n=4)
    print(f"{name:10} n={len(s)} p25={q[0]:.0f}us median={q[1]:.0f}us p75={q[2]:.0f}us  answers={[(st, b.decode()[:60]) for st, b in bodies[name]]}")
