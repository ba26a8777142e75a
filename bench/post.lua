-- post.lua - wrk script for bench/hit-path: POSTs a JSON body to a list of
-- paths, round robin by a counter (one path: one key; 1,000 paths: 1,000
-- keys). Usage: wrk ... -s post.lua URL -- PATHS_FILE BODY_FILE
-- Requests are formatted once in init(), so the client's own cost is the
-- same for every server. done() prints machine-readable lines, p99.9 too.

local requests = {}
local counter = 0

local function read_file(name)
    local f = assert(io.open(name, "rb"))
    local data = f:read("*a")
    f:close()
    return data
end

function init(args)
    local paths_file, body_file = args[1], args[2]
    local body = read_file(body_file)
    local headers = { ["Content-Type"] = "application/json" }
    for path in io.lines(paths_file) do
        if path ~= "" then
            requests[#requests + 1] = wrk.format("POST", path, headers, body)
        end
    end
    assert(#requests > 0, "no paths in " .. paths_file)
    -- Threads start at different places in the table.
    counter = math.random(#requests) - 1
end

function request()
    counter = counter + 1
    if counter > #requests then
        counter = 1
    end
    return requests[counter]
end

function done(summary, latency, requests_)
    local e = summary.errors
    io.write(string.format("bench requests %d\n", summary.requests))
    io.write(string.format("bench duration_us %d\n", summary.duration))
    io.write(string.format("bench errors %d\n",
        e.connect + e.read + e.write + e.status + e.timeout))
    io.write(string.format("bench non2xx %d\n", e.status))
    for _, p in ipairs({ 50, 99, 99.9 }) do
        io.write(string.format("bench p%s_us %d\n", tostring(p),
            latency:percentile(p)))
    end
end
