"""Smoke-check a running retrieval server (found via $ASEARCHER_RETRIEVAL_URL): health, a query, a page."""

import argparse
import json
import time

from asearcher.retrieval.client import RetrievalClient

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--output", required=True)
p.add_argument("--query", default="capital of France")
args = p.parse_args()

client = RetrievalClient.discover()
t0 = time.perf_counter()
docs = client.retrieve([args.query], topk=5)[0]
latency = time.perf_counter() - t0
if not docs:
    raise SystemExit(f"retrieval check failed: no documents for {args.query!r}")
page = client.access([docs[0]["url"]])[0]
report = {
    "query": args.query,
    "n_docs": len(docs),
    "top_url": docs[0]["url"],
    "page_found": page is not None,
    "latency_s": round(latency, 4),
}
with open(args.output, "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps(report))
