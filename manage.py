#!/usr/bin/env python
"""Django's command-line utility for OpenChargeback (same as `openchargeback`)."""

import sys


def main() -> None:
    from openchargeback.cli import main as cli_main

    cli_main(sys.argv)


if __name__ == "__main__":
    main()
