from fastlog.cli import main

raise SystemExit(main())
