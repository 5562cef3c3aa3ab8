from meshops.cli.main import main

raise SystemExit(main())
