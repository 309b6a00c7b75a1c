# Replays the start check on the per-group scores of start_check_scores.txt with other group choices
# (how many groups, which, and the early stop the reader now makes).  Run from the repository root.
import re, numpy as np
cases=[]; cur=[]
for line in open('bench/results/motion/start_check_scores.txt'):
    m=re.match(r'(.*) g(\d+): score gap ([-+\d.]+) rigid ([-+\d.]+)',line)
    if m: cur.append(float(m[4])-float(m[3])); continue
    m=re.match(r'(.*) movie: still ([\d.]+) gap ([-+\d.]+) rigid ([-+\d.]+)',line)
    if m: cases.append((m[1][:40],cur,float(m[3]),float(m[4]))); cur=[]
def sel(n,k,how):
    if how=='ends': at=np.linspace(0,n-1,k).round().astype(int)
    else: at=np.linspace(0,n-1,k+2).round().astype(int)[1:-1]
    return sorted(set(at))
for how,k in (('ends',4),('ends',2),('inner',2),('ends',3),('inner',1),('inner',3)):
    ok=0; tot=0; s=0; wrong=[]
    for name,d,gap,rig in cases:
        if not d or gap==rig: continue
        at=sel(len(d),k,how); sc=np.mean([d[i] for i in at]); rigid=sc>=0.1
        best=rig>gap; ok+= rigid==best; tot+=1; s+= rig if rigid else gap
        if rigid!=best: wrong.append(name[-12:])
    print(how,k,ok,'/',tot,'sum %.2f'%s, wrong)
ok=0; s=0
for name,d,gap,rig in cases:
    if not d or gap==rig: continue
    n=len(d); at=((np.arange(min(2,n))+0.5)*n/min(2,n)).astype(int)
    sc=np.mean([d[i] for i in at]); rigid=sc>=0.1; best=rig>gap
    ok+=rigid==best; s+= rig if rigid else gap
    print('%-42s n=%d at=%s score %+.2f -> %s (gap %+.2f rigid %+.2f)'%(name,n,list(at),sc,'rigid' if rigid else 'gap',gap,rig))
print('midpoints 2:',ok,'sum %.2f'%s)
print('--- sequential')
for band in (0.3,0.5,0.8):
  ok=0; s=0; saved=0
  for name,d,gap,rig in cases:
    if not d or gap==rig: continue
    n=len(d); at=list(np.linspace(0,n-1,min(4,n)).round().astype(int))
    order=[at[0],at[-1]]+at[1:-1] if len(at)>2 else at
    sc=[d[i] for i in order[:2]]
    if abs(np.mean(sc)-0.1)<band: sc=[d[i] for i in order]
    else: saved+=len(order)-2
    rigid=np.mean(sc)>=0.1; best=rig>gap; ok+=rigid==best; s+= rig if rigid else gap
  print(band, ok, 'sum %.2f'%s, 'saved decodes', saved)
print('--- as coded')
ok=0; s=0; used=0; full=0
for name,d,gap,rig in cases:
    if not d or gap==rig: continue
    n=len(d); at=list(np.linspace(0,n-1,min(4,n)).round().astype(int))
    order=[at[0],at[-1]]+at[1:-1] if len(at)>2 else at
    sc=[]
    for i in order:
        if len(sc)>=2 and abs(np.mean(sc)-0.1)>=0.5: break
        sc.append(d[i])
    used+=len(sc); full+=len(order)
    rigid=np.mean(sc)>=0.1; best=rig>gap; ok+=rigid==best; s+= rig if rigid else gap
    print('%-30s groups %d/%d score %+.2f %s'%(name[:30],len(sc),len(order),np.mean(sc),'rigid' if rigid else 'gap'))
print(ok,'sum %.2f'%s,'groups',used,'of',full)
