"""``python -m radstream.cli``."""

from radstream.cli import main

main()
