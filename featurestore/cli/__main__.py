"""``python -m featurestore.cli ...`` is ``fstore ...``."""

from . import main

main()
