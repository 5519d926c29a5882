import { readFileSync } from 'node:fs'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import { ConfigError, STAGES, type Stage } from '@tornado/shared'

/** Linux keeps the first 15 bytes of an executable's name in /proc/<pid>/comm and stat (TASK_COMM_LEN - 1). */
export const COMM_MAX_LENGTH = 15
export const MAX_NAMES_PER_STAGE = 256

const NAME_RULE = 'an executable name: 1 to 255 characters, no / and no control characters'
const ExecutableName = Type.String({ pattern: '^[^/\\x00-\\x1f\\x7f]{1,255}$', description: NAME_RULE })
const NameList = Type.Array(ExecutableName, { maxItems: MAX_NAMES_PER_STAGE })

/** The TORNADO_PROCESS_RULES file: for each stage, the executable names whose running processes count in it. */
export const ProcessRules = Type.Object(
  { downloading: Type.Optional(NameList), muxing: Type.Optional(NameList), uploading: Type.Optional(NameList) },
  { additionalProperties: false },
)
export type ProcessRules = Static<typeof ProcessRules>

export const DEFAULT_PROCESS_RULES: ProcessRules = {
  downloading: ['yt-dlp', 'youtube-dl', 'curl', 'wget', 'aria2c'],
  muxing: ['ffmpeg'],
  uploading: ['aws', 'rclone', 's5cmd', 's3cmd'],
}

/**
 * Reads and checks a rules file. Throws a ConfigError naming TORNADO_PROCESS_RULES, the file and what is wrong,
 * so a bad file stops start-up instead of silently counting nothing.
 */
export function loadProcessRules(path: string, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): ProcessRules {
  const fail = (what: string): never => {
    throw new ConfigError(`TORNADO_PROCESS_RULES=${JSON.stringify(path)} is invalid: ${what}`)
  }
  let text = ''
  try {
    text = readFile(path)
  } catch (err) {
    fail(`cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    fail(`not valid JSON (${(err as Error).message})`)
  }
  const problem = describeRulesProblem(parsed)
  if (problem !== undefined) fail(problem)
  return parsed as ProcessRules
}

const EXPECTED = 'expected a JSON object like {"muxing":["ffmpeg"],"downloading":["curl"],"uploading":["rclone"]}'

/** What is wrong with a parsed rules file, in words, or undefined when it is fine. */
export function describeRulesProblem(rules: unknown): string | undefined {
  const [issue] = Value.Errors(ProcessRules, rules)
  if (issue) {
    const [stage, index] = issue.instancePath.split('/').slice(1)
    if (issue.instancePath === '' && issue.keyword !== 'additionalProperties') return EXPECTED
    if (issue.keyword === 'additionalProperties' || (stage !== undefined && !(STAGES as readonly string[]).includes(stage))) {
      const unknown = stage ?? String((issue.params as { additionalProperties?: string[] }).additionalProperties?.[0])
      return `${JSON.stringify(unknown)} is not a stage; the stages are ${STAGES.join(', ')}`
    }
    if (index === undefined && issue.keyword === 'maxItems') return `${stage} lists more than ${MAX_NAMES_PER_STAGE} names`
    if (index === undefined) return `${stage} must be a list of executable names, e.g. ["ffmpeg"]`
    const value = (rules as Record<string, unknown[]>)[stage!]![Number(index)]
    return `${stage}[${index}] (${JSON.stringify(value)}) must be ${NAME_RULE}`
  }
  const stageOf = new Map<string, Stage>()
  for (const stage of STAGES) {
    for (const name of (rules as ProcessRules)[stage] ?? []) {
      const other = stageOf.get(name)
      if (other !== undefined) return `${JSON.stringify(name)} is listed under both ${other} and ${stage}; a process counts in one stage`
      stageOf.set(name, stage)
    }
  }
  if (stageOf.size === 0) return `it lists no executable names; ${EXPECTED}`
  return undefined
}

/** Interpreters whose scripts show under the interpreter's name (a `#!/usr/bin/env python3` script's comm is python3). */
const INTERPRETER = /^(python[0-9.]*|pypy[0-9.]*|perl|ruby|node|sh|bash|dash)$/

/** The rules compiled for the scan: which stage a process name counts in, and when a name needs a closer look. */
export class ProcessMatcher {
  private readonly stageOf = new Map<string, Stage>()
  /** The first 15 characters of every name longer than that: a comm equal to one of them may be that name, cut. */
  private readonly cutNames = new Set<string>()

  constructor(rules: ProcessRules) {
    for (const stage of STAGES) {
      for (const name of rules[stage] ?? []) {
        this.stageOf.set(name, stage)
        if (Buffer.byteLength(name) > COMM_MAX_LENGTH) this.cutNames.add(Buffer.from(name).subarray(0, COMM_MAX_LENGTH).toString())
      }
    }
  }

  stage(name: string): Stage | undefined {
    return this.stageOf.get(name)
  }

  /** The comm may be a rule's name cut to 15 bytes: the full name must come from the command line or exe. */
  mayBeCut(comm: string): boolean {
    return this.cutNames.has(comm)
  }

  /** The process may be a script run by an interpreter: its name is the script's, on the command line. */
  mayBeScript(comm: string): boolean {
    return INTERPRETER.test(comm)
  }
}
