#!/usr/bin/env python3
"""BIDS-App entrypoint: run.py bids_dir output_dir {participant,group} [options]."""
import sys

from bibsnet_trainer.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
