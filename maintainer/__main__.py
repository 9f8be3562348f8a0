from maintainer.cli import main

raise SystemExit(main())
