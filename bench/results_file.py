"""Where the benchmark drivers (distributed.py, precision.py, search.py) leave their results:
bench/results/<name>.md (the table a person reads) and <name>.json (every run's figures),
each written to a temporary file first and renamed, so an interrupted run leaves the old ones."""
import json, os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write(name, markdown, runs):
    """Writes results/<name>.md and .json atomically, then prints the Markdown."""
    base = os.path.join(RESULTS, name)
    for path, content in ((base + ".md", markdown), (base + ".json", json.dumps(runs, indent=1))):
        with open(path + ".tmp", "w") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
    print(markdown)
