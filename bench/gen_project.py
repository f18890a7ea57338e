"""Writes a synthetic compose project of N services for the loader benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path


def generate(directory: Path, services: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["name: bench", "x-common: &common", "  restart: unless-stopped",
             "  labels:", "    team: bench", "services:"]
    for i in range(services):
        dep = f"      - svc{i - 1}\n" if i else ""
        lines.append(
            f"  svc{i}:\n"
            "    <<: *common\n"
            f"    image: registry.local/app{i % 7}:${{TAG:-1.{i % 5}}}\n"
            f"    command: [\"serve\", \"--port\", \"{8000 + i}\"]\n"
            "    environment:\n"
            f"      - INDEX={i}\n"
            "      - MODE=bench\n"
            "    ports:\n"
            f"      - \"{20000 + i}:{8000 + i}\"\n"
            "    volumes:\n"
            f"      - data{i % 10}:/data\n"
            "      - ./conf:/etc/app:ro\n"
            "    healthcheck:\n"
            "      test: [\"CMD\", \"true\"]\n"
            "      interval: 5s\n"
            + (f"    depends_on:\n{dep}" if dep else "")
            + "    networks: [front, back]"
        )
    lines.append("networks:\n  front:\n  back:\n    internal: true")
    lines.append("volumes:\n" + "".join(f"  data{i}:\n" for i in range(10)))
    path = directory / "compose.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/p500")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    print(generate(target, count))
