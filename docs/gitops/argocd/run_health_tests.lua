-- Runs an Argo CD health script (or, with MODE, a resource action) against sample objects,
-- outside Argo CD.
--
--   lua run_health_tests.lua HEALTH_LUA CASES_JSON
--   lua run_health_tests.lua ACTION_LUA CASES_JSON action
--   lua run_health_tests.lua DISCOVERY_LUA CASES_JSON discovery
--
-- An action runs with `require("os")` giving only os.date and os.time, as much of os as Argo
-- CD's actions use; its result is reported as the fields the refresh action may touch.
-- CASES_JSON is a JSON array of Kubernetes objects (tests/argocd_health.rs converts the YAML
-- samples). For each object the script runs in a fresh environment that holds only `obj` and the
-- libraries Argo CD's sandbox offers (no os, io, require or load), so a script that works here
-- does not depend on anything Argo CD lacks. Prints a JSON array with one
-- {"status": ..., "message": ...} or {"error": ...} per object, in order.
--
-- Pure Lua 5.1 to 5.4; JSON null becomes nil, as in Argo CD.

local function fail(message)
  io.stderr:write("run_health_tests.lua: " .. message .. "\n")
  os.exit(2)
end

-- JSON decoding -------------------------------------------------------------------------------

local decode_value

local function decode_error(text, pos, what)
  error(string.format("invalid JSON at byte %d: %s", pos, what), 0)
end

local function skip_space(text, pos)
  local _, last = string.find(text, "^[ \t\r\n]*", pos)
  return last + 1
end

local escapes = {
  ['"'] = '"', ["\\"] = "\\", ["/"] = "/",
  b = "\b", f = "\f", n = "\n", r = "\r", t = "\t",
}

-- UTF-8 bytes of a code point.
local function utf8_bytes(code)
  if code < 0x80 then
    return string.char(code)
  elseif code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000),
      0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
    0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local function decode_string(text, pos)
  -- pos is just after the opening quote.
  local parts = {}
  while true do
    local chunk_end = string.find(text, '["\\]', pos)
    if chunk_end == nil then
      decode_error(text, pos, "unterminated string")
    end
    parts[#parts + 1] = string.sub(text, pos, chunk_end - 1)
    local c = string.sub(text, chunk_end, chunk_end)
    if c == '"' then
      return table.concat(parts), chunk_end + 1
    end
    local e = string.sub(text, chunk_end + 1, chunk_end + 1)
    if e == "u" then
      local hex = string.sub(text, chunk_end + 2, chunk_end + 5)
      local code = tonumber(hex, 16)
      if code == nil or #hex ~= 4 then
        decode_error(text, chunk_end, "bad \\u escape")
      end
      pos = chunk_end + 6
      -- A surrogate pair encodes one code point above U+FFFF.
      if code >= 0xD800 and code <= 0xDBFF and string.sub(text, pos, pos + 1) == "\\u" then
        local low = tonumber(string.sub(text, pos + 2, pos + 5), 16)
        if low ~= nil and low >= 0xDC00 and low <= 0xDFFF then
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
          pos = pos + 6
        end
      end
      parts[#parts + 1] = utf8_bytes(code)
    elseif escapes[e] ~= nil then
      parts[#parts + 1] = escapes[e]
      pos = chunk_end + 2
    else
      decode_error(text, chunk_end, "bad escape")
    end
  end
end

local function decode_array(text, pos)
  local out, n = {}, 0
  pos = skip_space(text, pos)
  if string.sub(text, pos, pos) == "]" then
    return out, pos + 1
  end
  while true do
    local value
    value, pos = decode_value(text, pos)
    n = n + 1
    out[n] = value
    pos = skip_space(text, pos)
    local c = string.sub(text, pos, pos)
    if c == "]" then
      return out, pos + 1
    elseif c ~= "," then
      decode_error(text, pos, "expected , or ]")
    end
    pos = pos + 1
  end
end

local function decode_object(text, pos)
  local out = {}
  pos = skip_space(text, pos)
  if string.sub(text, pos, pos) == "}" then
    return out, pos + 1
  end
  while true do
    pos = skip_space(text, pos)
    if string.sub(text, pos, pos) ~= '"' then
      decode_error(text, pos, "expected a key")
    end
    local key, value
    key, pos = decode_string(text, pos + 1)
    pos = skip_space(text, pos)
    if string.sub(text, pos, pos) ~= ":" then
      decode_error(text, pos, "expected :")
    end
    value, pos = decode_value(text, pos + 1)
    out[key] = value
    pos = skip_space(text, pos)
    local c = string.sub(text, pos, pos)
    if c == "}" then
      return out, pos + 1
    elseif c ~= "," then
      decode_error(text, pos, "expected , or }")
    end
    pos = pos + 1
  end
end

local literals = { ["true"] = true, ["false"] = false }

decode_value = function(text, pos)
  pos = skip_space(text, pos)
  local c = string.sub(text, pos, pos)
  if c == "{" then
    return decode_object(text, pos + 1)
  elseif c == "[" then
    return decode_array(text, pos + 1)
  elseif c == '"' then
    return decode_string(text, pos + 1)
  end
  for word, value in pairs(literals) do
    if string.sub(text, pos, pos + #word - 1) == word then
      return value, pos + #word
    end
  end
  if string.sub(text, pos, pos + 3) == "null" then
    return nil, pos + 4
  end
  local number = string.match(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if number ~= nil and number ~= "" and tonumber(number) ~= nil then
    return tonumber(number), pos + #number
  end
  decode_error(text, pos, "unexpected character " .. string.format("%q", c))
end

local function decode(text)
  local value, pos = decode_value(text, 1)
  pos = skip_space(text, pos)
  if pos <= #text then
    decode_error(text, pos, "trailing characters")
  end
  return value
end

-- JSON encoding of the results (strings only) ---------------------------------------------------

local function encode_string(s)
  local escaped = string.gsub(s, '[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return named[c] or string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

local function encode_result(fields)
  local keys = {}
  for key in pairs(fields) do
    keys[#keys + 1] = key
  end
  table.sort(keys)
  local parts = {}
  for _, key in ipairs(keys) do
    parts[#parts + 1] = encode_string(key) .. ":" .. encode_string(tostring(fields[key]))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Running the script --------------------------------------------------------------------------

local function read_file(path)
  local file, err = io.open(path, "rb")
  if file == nil then
    fail("cannot read " .. path .. ": " .. tostring(err))
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- A fresh copy of a library table, so one case cannot change what the next one sees.
local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = v
  end
  return out
end

local function sandbox(object, mode)
  local allowed = {}
  if mode == "action" then
    allowed.os = { date = os.date, time = os.time }
  end
  return {
    obj = object,
    require = function(name)
      local lib = allowed[name]
      if lib == nil then
        error("require of " .. tostring(name) .. " is not available here", 2)
      end
      return lib
    end,
    string = copy(string), table = copy(table), math = copy(math),
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, error = error, pcall = pcall,
    assert = assert, unpack = unpack or table.unpack,
  }
end

local function compile(source, name, env)
  if setfenv ~= nil then -- Lua 5.1
    local chunk, err = loadstring(source, name)
    if chunk ~= nil then
      setfenv(chunk, env)
    end
    return chunk, err
  end
  return load(source, name, "t", env)
end

-- What an action result shows: the refresh annotation, how many annotations there are, and the
-- identity and spec fields that must come back unchanged.
local function action_fields(result)
  local meta = result.metadata or {}
  local annotations = meta.annotations or {}
  local count = 0
  for _ in pairs(annotations) do
    count = count + 1
  end
  local spec = result.spec or {}
  return {
    refresh = annotations["emrspark.io/refresh-requested-at"] or "",
    annotations = count,
    name = meta.name or "",
    jobRunId = spec.jobRunId or "",
  }
end

local function discovery_fields(result)
  local out = {}
  for name, action in pairs(result) do
    out[name] = (action.disabled and "disabled") or "enabled"
  end
  return out
end

local function run_case(source, object, mode)
  local chunk, err = compile(source, "=script.lua", sandbox(object, mode))
  if chunk == nil then
    return { error = "does not compile: " .. tostring(err) }
  end
  local ok, result = pcall(chunk)
  if not ok then
    return { error = tostring(result) }
  end
  if type(result) ~= "table" then
    return { error = "returned " .. type(result) .. ", not a table" }
  end
  if mode == "action" then
    return action_fields(result)
  elseif mode == "discovery" then
    return discovery_fields(result)
  end
  return { status = result.status or "", message = result.message or "" }
end

local script_path, cases_path, mode = arg[1], arg[2], arg[3] or "health"
if script_path == nil or cases_path == nil then
  fail("usage: lua run_health_tests.lua HEALTH_LUA CASES_JSON")
end
local source = read_file(script_path)
local ok, cases = pcall(decode, read_file(cases_path))
if not ok then
  fail(cases_path .. ": " .. tostring(cases))
end
if type(cases) ~= "table" then
  fail(cases_path .. ": expected a JSON array of objects")
end

local out = {}
for i = 1, #cases do
  out[i] = encode_result(run_case(source, cases[i], mode))
end
io.write("[" .. table.concat(out, ",\n") .. "]\n")
