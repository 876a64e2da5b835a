#!/usr/bin/env python3
"""The paper's stack, as a peer for the benchmark: docker-py 7.1.0, sequential, the same six tables,
each answer written to a file and hashed after writing (SHA-256 of the file as written).

    dockerpy_collect.py --host unix:///tmp/dac-bench/docker.sock --out DIR [--no-export] [--no-save]
                        [--dac-set]

Tables: 1-2 containers (list, inspect, top of running ones, logs, export), 3-4 images (list,
inspect, history, save), 5 networks and volumes (list, inspect each) and plugins, 6 system (info,
version, df, events from 0 until now). Written by the DAC project for its benchmark; it does what
the paper describes with docker-py's low-level APIClient and nothing more (no concurrency, no
stats or changes, no verification of tars). SHA256SUMS lists every file.

--dac-set adds what dac asks beyond the six tables: one-shot stats of running containers and the
filesystem changes of every container (still sequential), for a comparison on equal requests.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import docker

CHUNK = 2 * 1024 * 1024  # docker-py's own DEFAULT_DATA_CHUNK_SIZE


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


class Out:
    def __init__(self, root):
        self.root = root
        self.sums = []
        os.makedirs(root, exist_ok=True)

    def _path(self, rel):
        p = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def _hash(self, rel, p):
        self.sums.append((sha256_file(p), rel))

    def json(self, rel, value):
        p = self._path(rel)
        with open(p, "w", encoding="utf-8") as f:
            json.dump(value, f)
        self._hash(rel, p)

    def raw(self, rel, data):
        p = self._path(rel)
        with open(p, "wb") as f:
            f.write(data)
        self._hash(rel, p)

    def stream(self, rel, chunks):
        p = self._path(rel)
        with open(p, "wb") as f:
            for c in chunks:
                f.write(c)
        self._hash(rel, p)

    def close(self):
        with open(os.path.join(self.root, "SHA256SUMS"), "w", encoding="utf-8") as f:
            for h, rel in self.sums:
                f.write(f"{h}  {rel}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--dac-set", action="store_true")
    a = ap.parse_args()

    api = docker.APIClient(base_url=a.host, version="auto", timeout=600)
    out = Out(a.out)
    errors = 0

    # Table 6 first, as the paper lists the volatile system state: events until now.
    now = time.time()
    out.stream("system/events.jsonl", api.events(since=0, until=now, decode=False))

    # Tables 1-2: containers.
    containers = api.containers(all=True)
    out.json("containers/list.json", containers)
    for c in containers:
        cid = c["Id"]
        try:
            out.json(f"containers/{cid}/inspect.json", api.inspect_container(cid))
            if c.get("State") == "running":
                out.json(f"containers/{cid}/top.json", api.top(cid))
                if a.dac_set:
                    out.json(f"containers/{cid}/stats.json", api.stats(cid, stream=False, one_shot=True))
            if a.dac_set:
                out.json(f"containers/{cid}/changes.json", api.diff(cid))
            out.raw(f"containers/{cid}/logs.txt",
                    api.logs(cid, stdout=True, stderr=True, timestamps=True, stream=False))
            if not a.no_export:
                out.stream(f"containers/{cid}/export.tar", api.export(cid, chunk_size=CHUNK))
        except docker.errors.APIError as e:
            errors += 1
            print(f"dockerpy_collect: {cid}: {e}", file=sys.stderr)

    # Tables 3-4: images.
    images = api.images(all=False)
    out.json("images/list.json", images)
    for img in images:
        iid = img["Id"]
        name = iid.replace(":", "_")
        try:
            out.json(f"images/{name}/inspect.json", api.inspect_image(iid))
            out.json(f"images/{name}/history.json", api.history(iid))
            if not a.no_save:
                out.stream(f"images/{name}/save.tar", api.get_image(iid, chunk_size=CHUNK))
        except docker.errors.APIError as e:
            errors += 1
            print(f"dockerpy_collect: {iid}: {e}", file=sys.stderr)

    # Table 5: networks, volumes, plugins.
    networks = api.networks()
    out.json("networks/list.json", networks)
    for n in networks:
        out.json(f"networks/{n['Id']}.json", api.inspect_network(n["Id"], verbose=True))
    volumes = api.volumes()
    out.json("volumes/list.json", volumes)
    for v in volumes.get("Volumes") or []:
        out.json(f"volumes/{hashlib.sha256(v['Name'].encode()).hexdigest()}.json", api.inspect_volume(v["Name"]))
    out.json("plugins/list.json", api.plugins())

    # Table 6: the system.
    out.json("system/info.json", api.info())
    out.json("system/version.json", api.version())
    out.json("system/df.json", api.df())

    out.close()
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
