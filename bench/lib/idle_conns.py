#!/usr/bin/env python3
"""idle_conns.py PROXY_PORT URL N HOLD_SECONDS — (used by bench/idle.sh) open N keep-alive client
connections to a forward proxy on 127.0.0.1, send one GET (absolute-form URL) on each, read its
complete answer, and keep every connection open and idle. Prints "ready OK FAILED" once all are
done, then holds them HOLD_SECONDS (or until stdin closes) so the caller can read the proxy's
memory, and closes them."""
import asyncio
import sys


async def one(port, request, sem, conns, failed):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            w.write(request)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if not head.startswith(b"HTTP/1.1 200"):
                raise ValueError(head[:40])
            await asyncio.wait_for(r.readexactly(length), 10)
            conns.append(w)
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            failed.append(1)


async def main():
    port, url, n, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    hostport = url.split("/")[2]
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (url, hostport)).encode()
    sem = asyncio.Semaphore(200)  # opens in flight: stays within the proxies' listen backlogs
    conns, failed = [], []
    await asyncio.gather(*(one(port, request, sem, conns, failed) for _ in range(n)))
    print("ready %d %d" % (len(conns), len(failed)), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), hold)
    except asyncio.TimeoutError:
        pass
    for w in conns:
        w.close()


asyncio.run(main())
