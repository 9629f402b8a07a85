from srforensics.cli import main

raise SystemExit(main())
