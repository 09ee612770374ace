from mailcase.cli import main

main()
