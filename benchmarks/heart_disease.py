"""Heart disease: FedAvg over the four hospitals vs pooled training vs each hospital alone.

The healthcare case of `benchmarks/domains.py` (same arms, same protocol):

    .venv/bin/python benchmarks/heart_disease.py --seeds 5
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from domains_benchmark import main

if __name__ == "__main__":
    main(["--domain", "healthcare", *sys.argv[1:]])
