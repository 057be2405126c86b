-- A fixed mix for the soak: product pages, narrow searches, checkout, home.
local paths = { "/p/1", "/p/2", "/p/3", "/p/42", "/search?q=socks", "/search?q=mug", "/", "/checkout" }
local i = 0
request = function()
  i = i + 1
  local p = paths[(i % #paths) + 1]
  if p == "/checkout" then
    return wrk.format("POST", p, { ["x-user"] = "u" .. (i % 500) }, "")
  end
  return wrk.format("GET", p)
end
