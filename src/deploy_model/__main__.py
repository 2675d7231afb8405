import sys

from deploy_model.cli import main

sys.exit(main())
