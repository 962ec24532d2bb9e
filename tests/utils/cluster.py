"""A real multi-node Ray cluster on one machine: a head with no CPUs and worker nodes as separate
`ray start` processes on loopback ports, each with its own dataset cache folder (as on separate hosts).

Worker i is marked with the custom resource `node<i>` and can be killed alone (its raylet and the
workers it spawned), as when a machine is lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from studies.local import RayHead, free_port, start_ray_head

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class WorkerNode:
    index: int
    manager_port: int
    cache_dir: Path
    alive: bool = True

    @property
    def pattern(self) -> str:
        return f"--node_manager_port={self.manager_port}"


@dataclass
class MultiNodeCluster:
    head: RayHead
    root: Path
    token: str
    workers: list[WorkerNode] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, token: str, *, workers: int = 2, cpus_per_worker: int = 1) -> MultiNodeCluster:
        head = start_ray_head(root / "head", auth_token=token, num_cpus=0, port=free_port(), dashboard_port=free_port())
        cluster = cls(head, root, token)
        try:
            cluster.add_workers(workers, cpus_per_worker)
            cluster.wait_for_nodes(workers)
        except BaseException:
            cluster.stop()  # a half-started cluster must not outlive the test
            raise
        return cluster

    def add_workers(self, n: int, cpus: int) -> list[WorkerNode]:
        # One after the other: `ray start` gives its raylet 30 s to register with the GCS, which two at
        # once on a busy 2-core machine do not always make.
        return [self.add_worker(cpus) for _ in range(n)]

    def add_worker(self, cpus: int) -> WorkerNode:
        i = len(self.workers)
        node = WorkerNode(i, free_port(), self.root / f"node{i}-cache")
        node.cache_dir.mkdir(parents=True, exist_ok=True)
        env = self.head.env({**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "ACTSTUDY_CACHE_DIR": str(node.cache_dir)})
        cmd = [RAY, "start", f"--address={self.head.address}", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1",
               f"--node-manager-port={node.manager_port}", f'--resources={{"node{i}": 1}}', "--disable-usage-stats"]
        log = self.root / f"node{i}.log"
        with log.open("ab") as out:
            proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"worker node {i} did not start: {log.read_text()[-2000:]}")
        self.workers.append(node)
        return node

    def _query(self, expression: str):
        """Evaluate `expression` against the cluster in a separate driver process (a test process may
        already be connected to another cluster, and Ray allows one per process)."""
        code = f"import json, ray; ray.init(address={self.head.address!r}, log_to_driver=False); print(json.dumps({expression}))"
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        import json

        return json.loads(out.stdout.strip().splitlines()[-1])

    def worker_node_ids(self) -> dict[int, str]:
        """Alive worker index → Ray node id."""
        nodes = self._query("[(n['NodeManagerPort'], n['NodeID']) for n in ray.nodes() if n['Alive']]")
        by_port = {port: node_id for port, node_id in nodes}
        return {w.index: by_port[w.manager_port] for w in self.workers if w.manager_port in by_port}

    def wait_for_nodes(self, n_workers: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.worker_node_ids()) >= n_workers:
                return
            time.sleep(1)
        raise TimeoutError(f"{n_workers} worker nodes did not join within {timeout} s")

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker node's raylet and everything it started, as when its machine is lost."""
        node = self.workers[index]
        raylet = subprocess.run(["pgrep", "-f", "--", node.pattern], capture_output=True, text=True).stdout.split()
        for pid in raylet:
            subprocess.run(["pkill", "-KILL", "-P", pid], check=False)  # its workers and agents
            subprocess.run(["kill", "-KILL", pid], check=False)
        node.alive = False

    def stop(self) -> None:
        self.head.stop()  # the worker nodes share the head's session folder, so this stops them too
