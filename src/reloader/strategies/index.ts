import type { StrategyName } from "../../config/types.ts";
import { noneStrategy } from "./none.ts";
import { restartStrategy } from "./restart.ts";
import { rollingStrategy } from "./rolling.ts";
import { signalStrategy } from "./signal.ts";
import type { Strategy } from "./types.ts";

export type { Strategy, StrategyContext, StrategyResult } from "./types.ts";

const STRATEGIES: Record<StrategyName, Strategy> = {
  none: noneStrategy,
  signal: signalStrategy,
  restart: restartStrategy,
  rolling: rollingStrategy,
};

export function strategyByName(name: StrategyName): Strategy {
  return STRATEGIES[name];
}
