from nassearch.cli import main

raise SystemExit(main())
