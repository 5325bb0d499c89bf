# Tiny TCP proxy: records client->server and server->client bytes of each connection.
import socket, sys, threading
lport, rport, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", lport)); ls.listen(4)
n = 0
def pipe(a, b, f):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            f.write(d); f.flush(); b.sendall(d)
    except OSError: pass
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
while True:
    c, _ = ls.accept()
    s = socket.create_connection(("127.0.0.1", rport))
    f1 = open(f"{prefix}{n}.c2s", "wb"); f2 = open(f"{prefix}{n}.s2c", "wb"); n += 1
    threading.Thread(target=pipe, args=(c, s, f1), daemon=True).start()
    threading.Thread(target=pipe, args=(s, c, f2), daemon=True).start()
