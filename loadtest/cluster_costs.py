# Redis commands and bytes per transfer with N okpay nodes sharing one Redis
# (issue 11 figures; counts, not speed, so debug binaries do). Usage:
#   cargo build -p okpay-gateway && python3 loadtest/cluster_costs.py 3
import json, os, subprocess, sys, time, urllib.request, threading, socket, random
N = int(sys.argv[1]); BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "debug", "okpay")
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
rp = free(); d = f"/tmp/okpay-cluster-costs-{N}"; subprocess.run(["rm", "-rf", d]); os.makedirs(d)
redis = subprocess.Popen(["redis-server", "--port", str(rp), "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", d], stdout=subprocess.DEVNULL)
time.sleep(0.5)
cfg = f"{d}/okpay.toml"
open(cfg, "w").write('[engine]\nshards = 8\nexecutors = 2\n\n[policy.fraud]\nchallenge_over = "1000"\nvelocity_max_ops = 100000\nvelocity_window_s = 60\nvelocity_max_sum = "100000"\nfan_out_max_new_recipients = 100000\nfan_out_window_s = 600\nunchallenged_window_s = 86400\n')
ports = [free() for _ in range(N)]; procs = []
for i, p in enumerate(ports):
    env = dict(os.environ, OKPAY_ADMIN_TOKEN="T", OKPAY_DEV="1", OKPAY_LOG="warn")
    procs.append(subprocess.Popen([BIN, "--listen", f"127.0.0.1:{p}", "--data-dir", f"{d}/n{i}", "--redis", f"redis://127.0.0.1:{rp}/", "--node-id", f"n{i}", "--config", cfg], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
def req(port, method, path, body=None, token=None, key=None):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(body).encode() if body is not None else None)
    r.add_header("content-type", "application/json")
    if token: r.add_header("authorization", f"Bearer {token}")
    if key: r.add_header("idempotency-key", key)
    with urllib.request.urlopen(r, timeout=20) as resp: return json.loads(resp.read() or b"null")
for p in ports:
    for _ in range(200):
        try: req(p, "GET", "/healthz"); break
        except Exception: time.sleep(0.1)
time.sleep(3)
users = []
for i in range(16):
    p = ports[i % N]; e = f"u{i}@x.com"
    a = req(p, "POST", "/v1/accounts", {"email": e, "password": "correct horse", "display_name": e})["account_id"]
    t = req(p, "POST", "/v1/sessions", {"login": e, "password": "correct horse", "device_id": "d"})["token"]
    req(p, "POST", "/v1/deposits", {"amount": "100.00", "currency": "CNY", "method": "bank_card", "card_number": "4111 1111 1111 1111"}, t, f"dep{i}")
    users.append((a, t))
def cli(*a): return subprocess.run(["redis-cli", "-p", str(rp), *a], capture_output=True, text=True).stdout
time.sleep(2); cli("CONFIG", "RESETSTAT")
T = 240; done = [0]; lock = threading.Lock()
def worker(w):
    rnd = random.Random(w)
    for j in range(T // 8):
        s = rnd.randrange(16); r = (s + 1 + rnd.randrange(15)) % 16
        req(ports[(w + j) % N], "POST", "/v1/transfers", {"to": users[r][0], "amount": "0.10", "currency": "CNY"}, users[s][1], f"t{w}-{j}")
        with lock: done[0] += 1
th = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
t0 = time.time(); [x.start() for x in th]; [x.join() for x in th]; el = time.time() - t0
time.sleep(1)
stats = cli("INFO", "commandstats"); st = cli("INFO", "stats")
calls = {}
for line in stats.splitlines():
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1); calls[name] = int(rest.split("calls=")[1].split(",")[0])
def stat(k): return int([l for l in st.splitlines() if l.startswith(k + ":")][0].split(":")[1])
total = sum(v for k, v in calls.items())
print(f"N={N} transfers={done[0]} wall={el:.1f}s commands/transfer={total/done[0]:.1f} in_bytes/transfer={stat('total_net_input_bytes')/done[0]:.0f} out_bytes/transfer={stat('total_net_output_bytes')/done[0]:.0f}")
print("  top:", sorted(((v / done[0], k) for k, v in calls.items()), reverse=True)[:10])
for p in procs: p.kill()
redis.kill()
