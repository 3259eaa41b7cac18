"""A first execution: shows the Gear layout from inside the container.

    gear run -r gpu-1 --code examples/hello --param epochs=3 -- python3 train.py
"""

import json
import os
from pathlib import Path

home = Path("/hyperai/home")
params = json.loads((home / "gear_params.json").read_text())
print(f"working directory: {os.getcwd()}")
print(f"execution: {os.environ.get('GEAR_EXECUTION')} in container {os.environ.get('GEAR_CONTAINER')}")
print(f"parameters: {params}")
print(f"GPUs allotted by Slurm: {os.environ.get('CUDA_VISIBLE_DEVICES', 'none')}")
print("inputs:", ", ".join(sorted(p.name for p in Path("/hyperai/input").iterdir())))

for epoch in range(1, int(params.get("epochs", 2)) + 1):
    print(f"epoch {epoch}: loss {1.0 / epoch:.3f}")

# /output is the same directory as /hyperai/home: what is written here is saved.
Path("/output/result.json").write_text(json.dumps({"epochs": params.get("epochs", 2), "loss": 1.0 / epoch}) + "\n")
print("saved result.json in /output")
