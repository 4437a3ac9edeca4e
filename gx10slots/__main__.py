from gx10slots.cli import main

main()
