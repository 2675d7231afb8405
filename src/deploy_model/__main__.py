import sys

from deploy_model.cli.main import main

sys.exit(main())
