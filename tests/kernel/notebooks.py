"""Executes notebooks with nbclient against the shardlab kernel and checks
there are no errors and the expected output types: a `:stats` cell shows
an HTML table, a `:trace` or `:bench` cell an SVG chart. A cell tagged
`raises-exception` must fail instead (a refusal the notebook documents).
After a cell tagged `serve-clients` (its `:serve`), clients.py sends chat
completions to the URL it printed, as another terminal would.

usage: notebooks.py [--write] NOTEBOOK...   (--write saves the outputs back)"""
import sys

import nbformat
from nbclient import NotebookClient

from clients import serve_clients
from common import install_spec, check

EXPECT = {":stats": ("text/html", "<table>"), ":trace": ("image/svg+xml", "<svg"),
          ":bench": ("image/svg+xml", "<svg"), ":nodes": ("text/html", "<table>"),
          ":plan": ("text/html", "<table>")}

write = "--write" in sys.argv
paths = [a for a in sys.argv[1:] if a != "--write"]
check(paths, "no notebooks given")
install_spec()
for path in paths:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": "shardlab", "display_name": "shardlab", "language": "shardlab"}
    NotebookClient(nb, kernel_name="shardlab", timeout=600, allow_errors=True,
                   on_cell_executed=serve_clients).execute()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in cell.metadata.get("tags", []):
            check(errors, "%s cell %d should fail (tagged raises-exception)" % (path, i))
            continue
        check(not errors, "%s cell %d failed: %r" % (path, i, errors))
        for line in cell.source.splitlines():
            word = line.strip().split(" ")[0]
            if word in EXPECT:
                mime, marker = EXPECT[word]
                found = [o for o in cell.outputs if o.output_type == "display_data"
                         and marker in o.get("data", {}).get(mime, "")]
                check(found, "%s cell %d (%s) has no %s output" % (path, i, word, mime))
    if write:
        nbformat.write(nb, path)
    print("ok", path)
print("ok")
