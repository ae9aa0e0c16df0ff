"""Two pseudo-terminals joined back to back, as a null-modem cable joins two serial ports.

Prints the two slave paths, then copies bytes between the masters until killed. Both peers of
bench/link_rtt.py go through this same bridge, so the comparison is fair.
"""

from __future__ import annotations

import os
import select
import termios
import tty


def main() -> None:
    ends = []
    for _ in range(2):
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        ends.append((master, slave, os.ttyname(slave)))
    print(ends[0][2], ends[1][2], flush=True)
    a, b = ends[0][0], ends[1][0]
    other = {a: b, b: a}
    while True:
        ready, _, _ = select.select([a, b], [], [])
        for fd in ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                continue
            os.write(other[fd], data)


if __name__ == "__main__":
    main()
