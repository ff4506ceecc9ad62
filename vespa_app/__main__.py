import sys

from vespa_app.cli import main

sys.exit(main())
