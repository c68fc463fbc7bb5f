// Loaded before every test file (bunfig.toml [test].preload). Shared test setup goes here.
export {};
